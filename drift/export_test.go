package drift

// NewWorkdirUnchecked copies src into a workdir without the configuration
// checks: tests prove with it that the sandbox alone contains a hostile
// configuration.
func (r *Runner) NewWorkdirUnchecked(src string) (*Workdir, error) {
	return r.newWorkdir(func(dir string) (string, error) { return CopyDirectory(src, dir, r.opts.Limits) }, false)
}

// FunctionRules returns admission's function lists: admitted, admitted
// with a path check, refused.
func FunctionRules() (known, files map[string]bool, refused map[string]string) {
	return knownFunctions, fileFunctions, refusedFunctions
}
