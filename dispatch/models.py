"""Process management models arrive with the runfcgi issue."""
