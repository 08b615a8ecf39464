"""Who is asking: token verification, roles and the channel permission policy."""
