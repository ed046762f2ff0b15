"""gradtracer.trees"""
