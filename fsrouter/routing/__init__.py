"""The pure routing core: who is on call at a moment, in which order they are called, what the
caller hears. Plain functions over the (immutable) configuration; no sockets, no database and
no clock reads: the moment is always passed in.
"""
