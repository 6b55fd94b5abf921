"""E-mail over SMTP (issue 13): DSN reading and writing, and the SMTP simulator of sandbox mode."""
