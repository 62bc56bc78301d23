"""The Azure side: the Instance Metadata Service client, its document parser and a simulator."""
