// Command storefront-oidc is the OpenID provider of Storefront's tests and
// local runs: zitadel/oidc's OP with its example in-memory storage and login
// page, one registered web client, and users who sign in with a password.
// Every start generates a new RS256 signing key, so a restart is a key
// rotation. Not for production: the issuer may be plain http.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// repeated is a flag that may be given more than once.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

type options struct {
	listen       string
	issuer       string
	clientID     string
	clientSecret string
	redirectURIs repeated
	postLogout   repeated
	usersFile    string
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:9998", "address to listen on")
	flag.StringVar(&o.issuer, "issuer", "", "issuer URL (default http://<listen>/)")
	flag.StringVar(&o.clientID, "client-id", "storefront-web", "the web client's id")
	flag.StringVar(&o.clientSecret, "client-secret", "storefront-web-secret", "the web client's secret (empty: a public client that must use PKCE)")
	flag.Var(&o.redirectURIs, "redirect-uri", "a redirect URI the client may use (repeatable)")
	flag.Var(&o.postLogout, "post-logout-redirect-uri", "a post-logout redirect URI the client may use (repeatable)")
	flag.StringVar(&o.usersFile, "users-file", "", "JSON users (a map of id to storage.User: ID, Username, Password, FirstName, LastName, Email, EmailVerified, IsAdmin); default: alice / storefront-test")
	flag.Parse()
	if o.issuer == "" {
		o.issuer = "http://" + o.listen + "/"
	}
	return o
}

// builtinUsers is the default user store: one shopper, alice.
type builtinUsers map[string]*storage.User

func (u builtinUsers) GetUserByID(id string) *storage.User { return u[id] }

func (u builtinUsers) GetUserByUsername(name string) *storage.User {
	for _, user := range u {
		if user.Username == name {
			return user
		}
	}
	return nil
}

// ExampleClientID names the example storage's JWT-profile service user.
func (builtinUsers) ExampleClientID() string { return storage.ServiceUserID }

func alice() builtinUsers {
	return builtinUsers{"alice": {
		ID:                "alice",
		Username:          "alice",
		Password:          "storefront-test",
		FirstName:         "Alice",
		LastName:          "Example",
		Email:             "alice@example.com",
		EmailVerified:     true,
		PreferredLanguage: language.English,
	}}
}

// shopStorage is the example storage with what a relying party like the
// shop's web needs: profile claims in the ID token (the web sends only the
// ID token on), a `roles: ["admin"]` claim for admins, and the registered
// post-logout redirect URIs (the example client has none).
type shopStorage struct {
	*storage.Storage
	users      storage.UserStore
	postLogout []string
}

func (s *shopStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	client, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return &shopClient{Client: client, postLogout: s.postLogout}, nil
}

func (s *shopStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, request op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, request, scopes); err != nil {
		return err
	}
	if user := s.users.GetUserByID(request.GetSubject()); user != nil && user.IsAdmin {
		info.AppendClaims("roles", []string{"admin"})
	}
	return nil
}

type shopClient struct {
	op.Client
	postLogout []string
}

func (c *shopClient) PostLogoutRedirectURIs() []string     { return c.postLogout }
func (c *shopClient) IDTokenUserinfoClaimsAssertion() bool { return true }

func main() {
	o := parseFlags()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(o, logger); err != nil {
		logger.Error("storefront-oidc stopped", "error", err)
		os.Exit(1)
	}
}

func run(o options, logger *slog.Logger) error {
	if len(o.redirectURIs) == 0 {
		return errors.New("at least one --redirect-uri is required")
	}
	var users storage.UserStore = alice()
	if o.usersFile != "" {
		var err error
		if users, err = storage.StoreFromFile(o.usersFile); err != nil {
			return fmt.Errorf("--users-file %s: %w", o.usersFile, err)
		}
	}
	client := storage.WebClient(o.clientID, o.clientSecret, o.redirectURIs...)
	if o.clientSecret == "" {
		client = storage.NativeClient(o.clientID, o.redirectURIs...)
	}
	store := &shopStorage{
		// A new RSA key (and key id) every start.
		Storage:    storage.NewStorageWithClients(users, map[string]*storage.Client{o.clientID: client}),
		users:      users,
		postLogout: o.postLogout,
	}
	// The example OP allows an http issuer (op.WithAllowInsecure).
	router := exampleop.SetupServer(o.issuer, store, logger, false)

	listener, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	server := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	logger.Info("storefront-oidc listening", "addr", listener.Addr().String(), "issuer", o.issuer, "client_id", o.clientID)
	if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
