"""gradtracer.analyzers"""
