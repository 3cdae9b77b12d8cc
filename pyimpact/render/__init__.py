"""pyimpact.render"""
