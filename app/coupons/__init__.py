"""Coupon activities issued through 云数汇 and WeChat Pay: master data, bank API, callbacks, reports."""
