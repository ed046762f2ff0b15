"""gradtracer.recsys.models"""
