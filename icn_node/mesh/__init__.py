"""icn_node.mesh"""
