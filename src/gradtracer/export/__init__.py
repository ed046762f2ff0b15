"""gradtracer.export"""
