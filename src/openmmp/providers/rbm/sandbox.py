"""The sandbox's service account: a published RSA key, for sandbox mode and tests only.

A demo RCS channel needs a service account key that really signs, the same in every process (the API,
each worker, the simulator): the key below was generated once for OpenMMP's sandbox and is published
with the source, so it proves nothing and must never be given to Google. The simulator knows its public
half, so tokens asked for with it are checked like Google checks them. It is also the sandbox's partner
service account, acting for the agents the platform makes; a real deployment's channels carry their own
key file (`serviceAccountJson`) or act with the operator's (`OPENMMP_PROVIDERS__RBM_PARTNER_SERVICE_ACCOUNT`).
"""

from __future__ import annotations

import json

SANDBOX_CLIENT_EMAIL = "openmmp-sandbox@openmmp-sandbox.iam.gserviceaccount.com"
SANDBOX_PRIVATE_KEY_ID = "openmmp-sandbox-key-1"

SANDBOX_PRIVATE_KEY_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCqVqSWfJJixmyo
y19QuOwTM4rUG935WMaTDKdcBnVWk+2TYOfDXAoWcp52oeObijVflH0HFiQt8Flh
/VvjIXRBCSd7Kg4Yfp9rLcmZq6mAAPCaCou8bc5yRfXLeL2SykAJTwJ5V80sLZG4
I8Di2T89/RgbFNpIACo4QOLMm/u3Z8R6n3OREiYYigmjSjVDEXhc/DvapHKQrR8K
VwAxcwXkVD2vTPS1mW4hl/kibESI9/uvRBJt8O1Wss7EZZxbIEQbVPX9HZUoEa7X
BmDS/Jo7sXj6LF9KfOsYDwioA2s+A3J4yMnEa39Id/KjFkOHMzpJmxuPUVw57BzI
NB61OYv/AgMBAAECggEABCjBGs2S4meMy7yW/g0YjDAlGSj5s4f6B/YHTZZfLuYb
c+yQY6InEDzsCQTKvFRdGXft89/HGJOp7Kj3kHH56CagPO8Eg/W7R+nq//euYIxl
U5WSRSxISLIYSR0H7MaL8FbILT/cWziyS1k/E5FVjsDlBAWZ9afG15oPU+iquo6D
6x0OMmHGc4WSOXz3BuJhxHCdCEwbamy6DwMUxTAK+5Lt1ygYNpTro2obxaCnle8m
PI7Lx3EH2CwlJq2CMEsMrQToDsXmVPAHO7JoOxZlW67hwdGO4C8Ru70WCF3n9OyE
JBkWZ47vgXjUTNYq/THlTM7R2ea7k++Hx1wwvyIKUQKBgQDUwV3qQHtRkFO0cvU4
7ioRcNLHRcPtij5i4Of73jdRfnTIR89f5thFwdWUheu2hd/nld5ipYW+KUa+20L5
NBoN2pU24vyGiRZX+2/oIbQNQ1OKk2EB8LwvXvbG/JKdIzCFJDOgJ7uj/rnAWazh
KSI6ami78vTwmaiPRQxRHz6osQKBgQDM9iGdMwI2Pw6AeA/WBSCiKIuoqbR7NqXn
KEk/zdptd4hND3ibAgLQc1wS+C+VRYAGfqWFqQ0RIiEiz5lMIVQNBXLP5GkSj6bZ
gFi8w3EaUBuTwNvb8a+pOR74LxcEX+7PsJYFS5wUHE3ROUUQwNgBhj3Ce9GqUhOd
uuro15arrwKBgH/DT16pMmUcwueOUWzKuUCX/DvmzW4MosJGRYmfPKEXy5GqbgIt
Ypshd90lPxPw+TDdcxrSQ6qapv1eNq3od+zx4sF/Nh6knGJhgCZqdvGwCK8jKhI8
OwZHhPKiInly9GRABTCcK7aj9XBpacQdK4zg8dxMXoNOA0dmM6tTlBFBAoGBAIxV
Wd6QNkt+ESfVDMK08AsXR8hLqc9TM3R6GO0evReGaESa+zDmx5aB5eD3HV1PIMFR
pXNGtDOu8pErIwMFLs9bk6jT8z1KLittvVRBXQdvIfKgcei+Kk/rVFEJrPDJ3nFF
rvIhOtRqLL28QJWf9EXW7CJlNMExQU0V1hFmyzrxAoGBAJ+52TMo1tyauptk3lQM
M63GqV6m3l+zAVsghQ5+rXd5BYnUBUvOS6HRExCYXKMdYyiV4Kn8HCx1DoyNSHtT
glidUVj2sR/gQFzwDZQOTynv8G4dj5sgNBla7Jspf2qoY/EldFHsmRJaBbTEm+BI
nsy67vQqlrDdvYPpnRqdjow9
-----END PRIVATE KEY-----
"""
"""SANDBOX ONLY: a 2048-bit RSA key published with OpenMMP. Anything it signs proves nothing."""

SANDBOX_SERVICE_ACCOUNT_JSON = json.dumps(
    {
        "type": "service_account",
        "project_id": "openmmp-sandbox",
        "private_key_id": SANDBOX_PRIVATE_KEY_ID,
        "private_key": SANDBOX_PRIVATE_KEY_PEM,
        "client_email": SANDBOX_CLIENT_EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
)
"""The demo channel's `serviceAccountJson`: a key file as Google issues them, with the sandbox key."""
