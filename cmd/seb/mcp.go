package main

import (
	"io"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/agentmcp"
)

func newMCPCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve seb's MCP tools for an agent over standard input and output",
		Long: `Mcp serves the Model Context Protocol on standard input and output, for an
agent to use seb with its own API token (SEB_TOKEN or SEB_TOKEN_FILE, an
agent token) against the server at --server (SEB_SERVER). Its tools plan a
configuration against live state, propose it, wait for seb's own plan of it,
read proposals, and list what a workspace holds. None approves, certifies or
executes: a proposal is only a request. seb serve also serves the same tools
over HTTP at /mcp.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := f.bearer()
			if err != nil {
				return err
			}
			client, err := agentmcp.NewClient(f.server, token)
			if err != nil {
				return err
			}
			server := agentmcp.NewServer(client, "seb")
			return server.Run(cmd.Context(), &mcp.IOTransport{
				Reader: io.NopCloser(cmd.InOrStdin()),
				Writer: nopWriteCloser{cmd.OutOrStdout()},
			})
		},
	}
	f.register(cmd)
	return cmd
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
