"""The embedded offline stand-in for MP-16: Blue Marble crops at MP-16 locations with land-cover and
Köppen labels, exported in MP-16's on-disk format (book/proxy.md)."""
