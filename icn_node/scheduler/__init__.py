"""icn_node.scheduler"""
