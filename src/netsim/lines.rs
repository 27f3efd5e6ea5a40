//! SMTP, FTP and IRC: a banner, a plausible reply to each command, every command recorded.

/// Line protocols the simulated internet speaks, chosen by the destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineProtocol {
    Smtp,
    Ftp,
    Irc,
}

impl LineProtocol {
    pub fn for_port(port: u16) -> Option<LineProtocol> {
        match port {
            25 | 587 | 2525 => Some(LineProtocol::Smtp),
            21 => Some(LineProtocol::Ftp),
            6660..=6669 | 7000 => Some(LineProtocol::Irc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LineProtocol::Smtp => "smtp",
            LineProtocol::Ftp => "ftp",
            LineProtocol::Irc => "irc",
        }
    }

    /// What the server says first.
    pub fn banner(self) -> &'static [u8] {
        match self {
            LineProtocol::Smtp => b"220 mail.example.com ESMTP Postfix\r\n",
            LineProtocol::Ftp => b"220 (vsFTPd 3.0.3)\r\n",
            LineProtocol::Irc => b":irc.example.net NOTICE * :*** Looking up your hostname...\r\n",
        }
    }
}

/// Longest line kept; longer lines are cut when recorded.
const MAX_LINE: usize = 512;

/// One line-protocol session.
#[derive(Debug)]
pub struct Session {
    pub protocol: LineProtocol,
    pending: Vec<u8>,
    /// SMTP between DATA and the lone dot: message bytes, not commands.
    in_data: bool,
    nick: String,
    pub closing: bool,
}

impl Session {
    pub fn new(protocol: LineProtocol) -> Session {
        Session {
            protocol,
            pending: Vec::new(),
            in_data: false,
            nick: "*".into(),
            closing: false,
        }
    }

    /// Feeds received bytes; returns the reply and the commands completed.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, Vec<String>) {
        self.pending.extend_from_slice(data);
        let mut reply = Vec::new();
        let mut commands = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if self.in_data {
                if text == "." {
                    self.in_data = false;
                    reply.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
                }
                continue;
            }
            commands.push(text.chars().take(MAX_LINE).collect());
            reply.extend_from_slice(&self.answer(text));
        }
        if self.pending.len() > MAX_LINE * 8 {
            // A line without end: keep only its start.
            self.pending.truncate(MAX_LINE);
        }
        (reply, commands)
    }

    fn answer(&mut self, line: &str) -> Vec<u8> {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let verb = verb.to_ascii_uppercase();
        if verb == "QUIT" {
            self.closing = true;
        }
        match self.protocol {
            LineProtocol::Smtp => smtp(&verb, &mut self.in_data).into(),
            LineProtocol::Ftp => ftp(&verb).into(),
            LineProtocol::Irc => self.irc(&verb, arg),
        }
    }

    fn irc(&mut self, verb: &str, arg: &str) -> Vec<u8> {
        let server = ":irc.example.net";
        let text = match verb {
            "NICK" => {
                self.nick = arg.split_whitespace().next().unwrap_or("*").to_string();
                return Vec::new();
            }
            "USER" => format!("{server} 001 {} :Welcome to the IRC Network\r\n", self.nick),
            "PING" => format!("{server} PONG {arg}\r\n"),
            "JOIN" => format!(":{}!user@host JOIN {arg}\r\n", self.nick),
            "QUIT" => "ERROR :Closing link\r\n".to_string(),
            _ => return Vec::new(),
        };
        text.into_bytes()
    }
}

fn smtp(verb: &str, in_data: &mut bool) -> &'static [u8] {
    match verb {
        "EHLO" => b"250-mail.example.com\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 Ok\r\n",
        "AUTH" => b"235 2.7.0 Authentication successful\r\n",
        "DATA" => {
            *in_data = true;
            b"354 End data with <CR><LF>.<CR><LF>\r\n"
        }
        "QUIT" => b"221 2.0.0 Bye\r\n",
        _ => b"502 5.5.2 Error: command not recognized\r\n",
    }
}

fn ftp(verb: &str) -> &'static [u8] {
    match verb {
        "USER" => b"331 Please specify the password.\r\n",
        "PASS" => b"230 Login successful.\r\n",
        "SYST" => b"215 UNIX Type: L8\r\n",
        "PWD" | "XPWD" => b"257 \"/\" is the current directory\r\n",
        "TYPE" | "MODE" | "STRU" | "CWD" | "NOOP" => b"200 Command okay.\r\n",
        "FEAT" => b"211 No features.\r\n",
        "QUIT" => b"221 Goodbye.\r\n",
        "PASV" | "EPSV" | "PORT" | "EPRT" | "RETR" | "STOR" | "LIST" | "NLST" => {
            b"425 Can't open data connection.\r\n"
        }
        _ => b"502 Command not implemented.\r\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_commands_are_recorded_and_data_is_not() {
        let mut s = Session::new(LineProtocol::Smtp);
        let (reply, cmds) = s.feed(b"EHLO bot\r\nMAIL FROM:<a@b>\r\nDATA\r\nSubject: x\r\n");
        assert_eq!(cmds, vec!["EHLO bot", "MAIL FROM:<a@b>", "DATA"]);
        assert!(reply.starts_with(b"250-mail.example.com"));
        assert!(reply.ends_with(b"354 End data with <CR><LF>.<CR><LF>\r\n"));
        let (reply, cmds) = s.feed(b"body\r\n.\r\nQU");
        assert!(cmds.is_empty());
        assert_eq!(reply, b"250 2.0.0 Ok: queued\r\n");
        let (reply, cmds) = s.feed(b"IT\r\n");
        assert_eq!(
            (reply.as_slice(), cmds),
            (&b"221 2.0.0 Bye\r\n"[..], vec!["QUIT".into()])
        );
        assert!(s.closing);
    }

    #[test]
    fn ftp_and_irc_answer_their_commands() {
        let mut f = Session::new(LineProtocol::Ftp);
        let (reply, cmds) = f.feed(b"USER anonymous\r\nPASS x@y\r\nRETR a.bin\r\n");
        assert_eq!(cmds, vec!["USER anonymous", "PASS x@y", "RETR a.bin"]);
        assert!(reply.ends_with(b"425 Can't open data connection.\r\n"));
        let mut i = Session::new(LineProtocol::Irc);
        let (reply, cmds) = i.feed(b"NICK bot1\r\nUSER a 0 * :b\r\nJOIN #cmd\r\n");
        assert_eq!(cmds.len(), 3);
        let text = String::from_utf8(reply).unwrap();
        assert!(text.contains(" 001 bot1 :Welcome"), "{text}");
        assert!(text.contains(":bot1!user@host JOIN #cmd"), "{text}");
        assert_eq!(LineProtocol::for_port(6667), Some(LineProtocol::Irc));
        assert_eq!(LineProtocol::for_port(80), None);
    }
}
