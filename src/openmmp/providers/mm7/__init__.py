"""MMS over MM7 (3GPP TS 23.140): a VASP account at the operator's MMSC, SOAP 1.1 with attachments."""
