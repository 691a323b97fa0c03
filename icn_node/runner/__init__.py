"""icn_node.runner"""
