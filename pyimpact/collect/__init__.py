"""pyimpact.collect"""
