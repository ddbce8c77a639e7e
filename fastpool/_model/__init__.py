"""The model layer: values with no I/O (errors and the one NotSent/MaybeSent mapping, URL,
headers, request, response, timeout, limits). Every other layer may use it."""
