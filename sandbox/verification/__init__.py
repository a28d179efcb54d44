"""Verification services (数据服务): a consumer asks yes/no questions about a person or firm;
the answers are checked against committed indexes under per-service rules and keys.
"""
