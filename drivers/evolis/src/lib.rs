//! Evolis escape-command printer driver (`ESC cmd;params CR`, ASCII replies).
