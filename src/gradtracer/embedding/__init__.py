"""gradtracer.embedding"""
