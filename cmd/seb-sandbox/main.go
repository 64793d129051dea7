// Command seb-sandbox is the small program through which seb's runner
// starts Terraform in a bubblewrap sandbox: the sandbox package's shim,
// without the rest of seb, so that each Terraform step starts quickly.
// The runner uses it when it sits beside the seb binary; it does nothing
// when run by hand.
package main

import (
	"fmt"
	"os"

	_ "github.com/seb-broker/seb/sandbox" // its init is the shim
)

func main() {
	fmt.Fprintln(os.Stderr, "seb-sandbox: seb's runner starts this program to run Terraform in a sandbox; it is not run by hand")
	os.Exit(2)
}
