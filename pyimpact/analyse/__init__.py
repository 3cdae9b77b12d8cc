"""pyimpact.analyse"""
