"""The domain of recordings: what is recorded, who may have it, and how it is handed out.

- ``catalog``: MCU conference recordings (HD, SD, aux renditions), registered and announced.
- ``fileserver`` and ``drivepaths``: recordings on the file server, named by drive-letter paths.
- ``discovery``: a conference's recordings read from its recording server's listing.
- ``access``: every rule of who may download what.
"""
