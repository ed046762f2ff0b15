"""gradtracer.recsys.data"""
