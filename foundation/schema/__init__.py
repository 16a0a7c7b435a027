"""Tenant-written JSON Schemas and regexes, evaluated at a bounded cost (linear regexes, capped work)."""
