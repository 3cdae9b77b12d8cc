"""pyimpact.demo"""
