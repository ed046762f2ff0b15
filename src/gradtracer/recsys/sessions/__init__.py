"""gradtracer.recsys.sessions"""
