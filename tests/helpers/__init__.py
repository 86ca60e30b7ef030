"""Helpers shared by the tests: tiny models, synthetic data, DICOM files, a fake Hub. No tests here."""
