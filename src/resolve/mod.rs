//! Name resolution and dialing (Reseau's `HostResolvers`, Go's `net.Dialer`).
//!
//! Work in progress: see the resolver issue.
