"""`ray-mlops audit log|verify`: read and check the audit trail."""
