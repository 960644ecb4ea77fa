"""datapath/linux"""
