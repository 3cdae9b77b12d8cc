"""pyimpact.export"""
