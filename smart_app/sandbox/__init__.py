"""The local development EHR: synthetic patients, SMART authorization server and launcher."""
