"""One API view per operation; each declares its small input and output serializers and its schema."""
