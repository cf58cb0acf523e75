"""dealbooks operator command line (`dealbooks --help`)."""
