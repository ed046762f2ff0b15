"""gradtracer.features"""
