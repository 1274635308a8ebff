package auth

// Verifications returns how many argon2id verifications a has run.
func (a *Authenticator) Verifications() int64 { return a.verifications.Load() }
