"""gradtracer.flow"""
