"""The Azure side: the Instance Metadata Service client and its document parser."""
