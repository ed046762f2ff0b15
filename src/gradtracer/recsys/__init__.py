"""gradtracer.recsys"""
