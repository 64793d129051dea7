package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/agentmcp"
	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/postgres"
	"github.com/seb-broker/seb/broker/sqlite"
	"github.com/seb-broker/seb/broker/sqlstore"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/sandbox"
	"github.com/seb-broker/seb/web"
)

// loadConfig reads path, or returns the demo configuration when path is
// the default and does not exist.
func loadConfig(cmd *cobra.Command, path string) (*broker.Config, error) {
	cfg, err := broker.LoadConfig(path)
	if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
		fmt.Fprintf(cmd.ErrOrStderr(), "seb: no %s here; using the demo configuration (workspace \"sandbox\")\n", path)
		cfg = broker.DefaultConfig()
		if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
			return nil, err
		}
		return cfg, nil
	}
	return cfg, err
}

// loadOperatorConfig loads the configuration for a command that changes a
// broker's data directory (tokens, keys). Without a seb.hcl it uses the
// demo's only if that data directory already holds a database: a token
// made into a fresh database elsewhere would be one no server knows.
func loadOperatorConfig(cmd *cobra.Command, path string) (*broker.Config, error) {
	cfg, err := loadConfig(cmd, path)
	if err != nil {
		return nil, err
	}
	if _, serr := os.Stat(path); serr != nil && !cmd.Flags().Changed("config") {
		db := filepath.Join(cfg.DataDir, "seb.db")
		if _, err := os.Stat(db); err != nil {
			return nil, fmt.Errorf("no %s here and no seb database at %s: run this where seb serve runs, or name its configuration with --config (or SEB_CONFIG)", path, db)
		}
	}
	return cfg, nil
}

// app is a running broker's parts, wired together.
type app struct {
	cfg    *broker.Config
	store  *sqlstore.Store
	svc    *broker.Service
	issuer *broker.Issuer
	server *web.Server
	// engine says how the embedded runner runs Terraform.
	engine engineOptions
	logger *slog.Logger
}

// loopbackURL is the URL this machine reaches a server listening on
// listen at.
func loopbackURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// openStore opens the broker's store: the PostgreSQL database replicas
// share when seb.hcl names one, else the SQLite file under the data
// directory.
func openStore(ctx context.Context, cfg *broker.Config) (*sqlstore.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if cfg.HA() {
		return postgres.Open(ctx, cfg.Database.URL, postgres.Options{Password: cfg.Database.Password})
	}
	return sqlite.Open(filepath.Join(cfg.DataDir, "seb.db"), sqlite.Options{})
}

// keyFiles are the keys under the data directory every replica must
// share: the token issuer's, the signer's, and the key of sensitive
// values' digests.
var keyFiles = []string{"keys", "signer", "sensitive.key"}

// requireKeys refuses to start a replica whose data directory lacks a
// key: a replica making its own would sign what the others cannot verify.
// It looks for the very files the keys are opened from.
func requireKeys(dataDir string) error {
	var missing []string
	for _, p := range []string{
		filepath.Join(dataDir, "keys", "signing-keys", "index.json"),
		filepath.Join(dataDir, "signer", broker.SignerKeyFile),
		filepath.Join(dataDir, "sensitive.key"),
	} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			missing = append(missing, p)
		}
	}
	if missing != nil {
		return fmt.Errorf("seb.hcl names a shared database, so every replica must sign with the same keys, and these are missing: %s; make them once with seb keys init, and copy them to each replica's data directory (see the README, \"High availability\")",
			strings.Join(missing, ", "))
	}
	return nil
}

// sameSigner refuses a replica whose signer did not sign the audit log's
// last entry: its keys are not the ones the replicas share, and what it
// signed the others could not verify.
func sameSigner(ctx context.Context, store broker.Store, signer *broker.Signer) error {
	last, err := store.LastAuditEntry(ctx)
	if err != nil || last == nil {
		return err
	}
	for _, k := range signer.PublicKeys() {
		if broker.PublicKeyID(k) == last.KeyID {
			return nil
		}
	}
	return fmt.Errorf("this replica's signer key %s did not sign the audit log's last entry (key %s): its data directory does not hold the keys the replicas share; copy keys/, signer/ and sensitive.key from a replica that runs", signer.KeyID(), last.KeyID)
}

// importFileState moves the Terraform states a broker kept as files under
// the data directory (before they lived in the store) into the store, for
// each workspace whose state the store does not hold yet.
func importFileState(ctx context.Context, dataDir string, store broker.Store) error {
	dir := filepath.Join(dataDir, "state")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	files, err := drift.NewFileStateStore(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || drift.ValidWorkspace(e.Name()) != nil {
			continue
		}
		have, err := store.CurrentState(ctx, e.Name())
		if err != nil {
			return err
		}
		if have != nil {
			continue
		}
		state, err := files.Current(ctx, e.Name())
		if err != nil {
			return fmt.Errorf("import the state of %s: %w", e.Name(), err)
		}
		if state == nil {
			continue
		}
		if _, err := store.PutState(ctx, e.Name(), state, time.Now()); err != nil {
			return fmt.Errorf("import the state of %s: %w", e.Name(), err)
		}
	}
	return nil
}

// openApp builds the broker from its configuration: keys, signer, store,
// state, services and the HTTP server. The broker runs no Terraform: its
// runners do (see start).
func openApp(ctx context.Context, cfg *broker.Config, cliConfig string, logger *slog.Logger) (*app, error) {
	if cfg.HA() {
		if err := requireKeys(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*app, error) {
		store.Close()
		return nil, err
	}
	keys, err := broker.OpenKeySet(filepath.Join(cfg.DataDir, "keys"), broker.KeySetOptions{})
	if err != nil {
		return fail(err)
	}
	issuer, err := broker.NewIssuer(broker.IssuerOptions{URL: cfg.IssuerURL, Keys: keys})
	if err != nil {
		return fail(err)
	}
	signer, err := broker.OpenSigner(filepath.Join(cfg.DataDir, "signer"))
	if err != nil {
		return fail(err)
	}
	if cfg.HA() {
		if err := sameSigner(ctx, store, signer); err != nil {
			return fail(err)
		}
	} else if err := importFileState(ctx, cfg.DataDir, store); err != nil {
		return fail(err)
	}
	sensitiveKey, err := dataKey(filepath.Join(cfg.DataDir, "sensitive.key"))
	if err != nil {
		return fail(err)
	}
	engine := engineOptions{Terraform: cfg.Terraform, CLIConfig: cliConfig, InsecureNoSandbox: cfg.Runner.InsecureNoSandbox}
	if cliConfig == "" {
		// Providers only from a mirror in the data directory; the sandbox
		// sees that directory alone, never the rest.
		engine.Mirror = filepath.Join(cfg.DataDir, "providers")
		if err := os.MkdirAll(engine.Mirror, 0o755); err != nil {
			return fail(err)
		}
	}
	svc, err := broker.New(broker.Options{Store: store, Leader: store, Signer: signer, Issuer: issuer, JobLease: cfg.Runner.Lease,
		Workspaces: cfg.Workspaces, SensitiveKey: sensitiveKey, ClockSkew: cfg.ClockSkew, Logger: logger})
	if err != nil {
		return fail(err)
	}
	// Agents' MCP sessions call this server's own API with their token.
	server, err := web.New(web.Options{Broker: svc, Records: store, Issuer: issuer.Handler(), Logger: logger,
		MCP: agentmcp.Handler(loopbackURL(cfg.Listen), "seb")})
	if err != nil {
		return fail(err)
	}
	return &app{cfg: cfg, store: store, svc: svc, issuer: issuer, server: server, engine: engine, logger: logger}, nil
}

// start readies a broker serving at url: it ends the jobs a previous
// process left (with an embedded runner, they died with it), sweeps
// jobs whose runner stopped, and starts the embedded runner unless
// runners are external. stop stops them.
func (a *app) start(ctx context.Context, url string, stderr io.Writer) (stop func(), err error) {
	if !a.cfg.Runner.External {
		if err := a.svc.RecoverJobs(ctx, embeddedRunnerName(url)); err != nil {
			return nil, fmt.Errorf("recover interrupted jobs: %w", err)
		}
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go a.svc.Background(bg, 2*time.Second)
	if a.cfg.Runner.External {
		return cancel, nil
	}
	r, err := startEmbeddedRunner(ctx, a.store, url, a.engine, stderr)
	if err != nil {
		cancel()
		return nil, err
	}
	return func() {
		// Running jobs are interrupted and report their state while the
		// server still answers.
		r.Stop(45 * time.Second)
		cancel()
	}, nil
}

// shimBeside returns seb-sandbox when it sits beside this executable (as
// make build puts it): each Terraform step then starts through a small
// program rather than the whole of seb. "" means seb is its own shim.
func shimBeside() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	shim := filepath.Join(filepath.Dir(self), "seb-sandbox")
	if fi, err := os.Stat(shim); err != nil || fi.IsDir() {
		return ""
	}
	return shim
}

// engineOptions say how to run Terraform on this machine.
type engineOptions struct {
	// Terraform is an explicit binary; "" finds one.
	Terraform string
	// CLIConfig is a Terraform CLI configuration naming the provider
	// mirror; Mirror names it directly.
	CLIConfig, Mirror string
	InsecureNoSandbox bool
	SensitiveKey      []byte
	WorkRoot          string
	Logger            *slog.Logger
}

// newEngine finds Terraform, the provider mirror and bubblewrap, and
// returns the engine that runs Terraform in a sandbox. Without bubblewrap
// it refuses, unless the insecure setting says otherwise.
func newEngine(ctx context.Context, o engineOptions) (*drift.Runner, error) {
	terraform, err := drift.FindTerraform(ctx, drift.FindOptions{Path: o.Terraform, Download: true})
	if err != nil {
		return nil, err
	}
	mirror := o.Mirror
	if mirror == "" {
		if o.CLIConfig == "" {
			return nil, errors.New("no provider mirror: give --provider-mirror or a Terraform CLI configuration naming one (TF_CLI_CONFIG_FILE)")
		}
		if mirror, err = drift.MirrorFromCLIConfig(o.CLIConfig); err != nil {
			return nil, err
		}
	}
	if mirror, err = filepath.Abs(mirror); err != nil {
		return nil, err
	}
	var sb *sandbox.Sandbox
	if o.InsecureNoSandbox {
		o.Logger.Warn("INSECURE: Terraform runs without a sandbox; a configuration can read and run anything this user can (runner insecure_no_sandbox)")
	} else if sb, err = sandbox.New(ctx, sandbox.Options{Shim: shimBeside()}); err != nil {
		return nil, fmt.Errorf("%w\nseb runs Terraform only in a bubblewrap sandbox; on a development machine without it, set runner { insecure_no_sandbox = true } in seb.hcl (or seb runner --insecure-no-sandbox)", err)
	}
	return drift.New(ctx, drift.Options{Terraform: terraform, ProviderMirror: mirror, Sandbox: sb,
		InsecureNoSandbox: o.InsecureNoSandbox, WorkRoot: o.WorkRoot, SensitiveKey: o.SensitiveKey, Logger: o.Logger})
}

// dataKey returns the key in path, creating a random one (0600) the first
// time.
func dataKey(path string) ([]byte, error) {
	if err := createKeyFile(path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("%s: the key is shorter than 16 bytes", path)
	}
	return key, nil
}

func newServeCommand() *cobra.Command {
	var (
		configPath string
		listen     string
		cliConfig  string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker: the API, the token issuer and the executions",
		Long: `Serve loads seb.hcl (or, when there is none, the demo configuration with the
sandbox workspace), opens the store under the data directory, marks any
execution a previous process left running as interrupted, records the
policy epoch of the configuration, and serves the API until interrupted.
In-flight executions get 30 seconds to finish, then are interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			cfg, err := loadConfig(cmd, configPath)
			if err != nil {
				return err
			}
			if listen != "" {
				// The issuer is this server: follow it to the new address
				// unless the configuration names another URL.
				if cfg.IssuerURL == "http://"+cfg.Listen {
					cfg.IssuerURL = "http://" + listen
				}
				cfg.Listen = listen
			}
			if cliConfig == "" {
				cliConfig = os.Getenv("TF_CLI_CONFIG_FILE")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := openApp(ctx, cfg, cliConfig, logger)
			if err != nil {
				return err
			}
			defer a.store.Close()
			if _, err := a.svc.LoadPolicy(ctx, cfg.Digest); err != nil {
				return fmt.Errorf("policy epoch: %w", err)
			}
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return err
			}
			stopRunners, err := a.start(ctx, "http://"+ln.Addr().String(), cmd.ErrOrStderr())
			if err != nil {
				ln.Close()
				return err
			}
			hs := &http.Server{Handler: a.server, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.ErrOrStderr(), "seb: serving on http://%s (issuer %s, data %s)\n", ln.Addr(), cfg.IssuerURL, cfg.DataDir)
			errc := make(chan error, 1)
			go func() { errc <- hs.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			stopRunners()
			shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			hs.Shutdown(shutdown)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "seb.hcl", "configuration file")
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (default: the configuration's, 127.0.0.1:8080)")
	cmd.Flags().StringVar(&cliConfig, "terraform-cli-config", "", "Terraform CLI configuration for runs (default: TF_CLI_CONFIG_FILE)")
	return cmd
}

func newTokensCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Create, list and revoke API tokens (on this machine's data directory)"}
	var (
		configPath, role, name string
		scope, groups          []string
	)
	// open opens the store and signer of the data directory: these
	// commands run beside seb serve, as its operator.
	open := func(cmd *cobra.Command) (broker.Store, *broker.Signer, error) {
		cfg, err := loadOperatorConfig(cmd, configPath)
		if err != nil {
			return nil, nil, err
		}
		store, err := openStore(cmd.Context(), cfg)
		if err != nil {
			return nil, nil, err
		}
		signer, err := broker.OpenSigner(filepath.Join(cfg.DataDir, "signer"))
		if err != nil {
			store.Close()
			return nil, nil, err
		}
		return store, signer, nil
	}
	create := &cobra.Command{
		Use:   "create --role agent|reviewer|ci|admin|runner --name NAME",
		Short: "Create an API token and print it once; only its hash is kept (audited)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, signer, err := open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			cfg, err := loadOperatorConfig(cmd, configPath)
			if err != nil {
				return err
			}
			var known []string
			for _, w := range cfg.Workspaces {
				known = append(known, w.Name)
			}
			token, _, err := broker.CreateAPIToken(cmd.Context(), store, signer, name, broker.Role(role),
				broker.TokenScope{Workspaces: scope, Groups: groups}, known, localActor(), time.Now())
			if err != nil {
				return errors.New(broker.ErrorMessage(err))
			}
			fmt.Fprintln(cmd.OutOrStdout(), token)
			fmt.Fprintf(cmd.ErrOrStderr(), "seb: created %s token %q; it is shown only this once\n", role, name)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "agent, reviewer, ci, admin or runner")
	create.Flags().StringVar(&name, "name", "", "who the token is for; proposals and reviews carry it")
	create.Flags().StringArrayVar(&scope, "workspace", nil, "limit the token to this workspace (repeat for several; none: all)")
	create.Flags().StringArrayVar(&groups, "group", nil, "a group its holder belongs to, which a policy may require approvals from (repeat for several)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the API tokens: names, roles, creation times (never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, _, err := open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			tokens, err := store.ListAPITokens(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tROLE\tWORKSPACES\tGROUPS\tCREATED")
			for _, t := range tokens {
				workspaces, groups := "(all)", "-"
				if len(t.Workspaces) > 0 {
					workspaces = strings.Join(t.Workspaces, ",")
				}
				if len(t.Groups) > 0 {
					groups = strings.Join(t.Groups, ",")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, workspaces, groups, t.CreatedAt.Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an API token: refused from its next request on, its UI sessions ended (audited)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, signer, err := open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			if err := broker.RevokeAPIToken(cmd.Context(), store, signer, args[0], localActor(), time.Now()); err != nil {
				return errors.New(broker.ErrorMessage(err))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "seb: revoked token %q\n", args[0])
			return nil
		},
	}
	for _, c := range []*cobra.Command{create, list, revoke} {
		c.Flags().StringVar(&configPath, "config", "seb.hcl", "configuration file (for the data directory)")
		cmd.AddCommand(c)
	}
	return cmd
}

// localActor names, in the audit log, the operator running a command on
// the broker's machine.
func localActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "local:" + u.Username
	}
	return "local"
}
