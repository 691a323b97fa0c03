"""The JSON-RPC error codes icnd answers with, and nothing else.

A module of constants so that a client (``icnctl``, :mod:`.client`) can name them without
importing the server side: the registry pulls in logging and the codec, which cost a command
line tool more start-up time than its whole call.
"""

# JSON-RPC's own error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application errors (JSON-RPC reserves -32000..-32099 for implementations).
DOMAIN_ERROR = -32000
PERMISSION_DENIED = -32001  # the connecting user may not use this socket (the server's)
BUSY = -32002  # every connection is running a request (the server's)
