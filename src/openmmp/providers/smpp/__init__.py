"""SMS over SMPP 3.4 (`applicationId` 3): the PDU codec and the text encodings, so far (issue 13).

OpenMMP speaks SMPP with a codec of its own: of the three libraries on PyPI, measured against the same
SMSC simulator (bench/smpp_libraries.py), none fits a worker's asyncio loop (see that file's results).
"""
