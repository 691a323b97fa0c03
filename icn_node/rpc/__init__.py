"""icn_node.rpc"""
