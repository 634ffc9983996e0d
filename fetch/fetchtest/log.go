package fetchtest

import (
	"io"
	"log"
)

// quietLog keeps net/http's complaints about the connections that the
// faults break on purpose out of the test output.
var quietLog = log.New(io.Discard, "", 0)
