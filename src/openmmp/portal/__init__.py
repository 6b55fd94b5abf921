"""The web portal at /portal: the same services as the API, for people who are not developers."""
