"""The HTTP layer: problems (problem+json and the HTTP layer's own codes), parsing (request id,
body, fields, query parameters), render (JSON and problem documents), logs (JSON lines), errors
(database and Bottle errors to problems, by the registry's policy), plugin (the Bottle plugin:
connection, retries, errors, metrics) and routes (one module per resource)."""
