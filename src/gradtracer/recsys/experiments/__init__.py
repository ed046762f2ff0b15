"""gradtracer.recsys.experiments"""
