//! Opening the byte stream to a printer from a `--device` string.

use std::time::Duration;

use station_hal::PrinterError;

use crate::Stream;

/// Where the printer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A serial port (`/dev/ttyUSB0`, `COM3`, or a pty).
    Serial(String),
    /// A USB printer-class node (`/dev/usb/lp0`).
    UsbNode(String),
    /// A printer on the network.
    Tcp(String),
}

impl DeviceSpec {
    /// Reads `tcp://host:port`, `/dev/usb/lp*`, or any other path as a serial port.
    pub fn parse(s: &str) -> Self {
        if let Some(addr) = s.strip_prefix("tcp://") {
            DeviceSpec::Tcp(addr.to_string())
        } else if s.contains("/usb/lp") {
            DeviceSpec::UsbNode(s.to_string())
        } else {
            DeviceSpec::Serial(s.to_string())
        }
    }
}

/// Opens the stream.
pub fn open_device(spec: &DeviceSpec) -> Result<Box<dyn Stream>, PrinterError> {
    let offline = |what: &str, e: &dyn std::fmt::Display| {
        PrinterError::Offline(format!("cannot open {what}: {e}"))
    };
    match spec {
        DeviceSpec::Serial(path) => {
            let port = serialport::new(path, 115_200)
                .timeout(Duration::from_millis(200))
                .open_native()
                .map_err(|e| offline(path, &e))?;
            Ok(Box::new(port))
        }
        DeviceSpec::UsbNode(path) => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| offline(path, &e))?;
            Ok(Box::new(f))
        }
        DeviceSpec::Tcp(addr) => {
            let s = std::net::TcpStream::connect(addr).map_err(|e| offline(addr, &e))?;
            s.set_nodelay(true).map_err(|e| offline(addr, &e))?;
            Ok(Box::new(s))
        }
    }
}

/// The two ends of a printer link: replies are read from the first, commands written to
/// the second.
pub type Halves = (
    Box<dyn std::io::Read + Send>,
    Box<dyn std::io::Write + Send>,
);

/// Opens the stream as its two ends (one reader, one writer), so commands can be
/// written while an earlier command's reply is awaited.
pub fn open_halves(spec: &DeviceSpec) -> Result<Halves, PrinterError> {
    let offline = |what: &str, e: &dyn std::fmt::Display| {
        PrinterError::Offline(format!("cannot open {what}: {e}"))
    };
    match spec {
        DeviceSpec::Serial(path) => {
            let port = serialport::new(path, 115_200)
                .timeout(Duration::from_millis(200))
                .open()
                .map_err(|e| offline(path, &e))?;
            let reader = port.try_clone().map_err(|e| offline(path, &e))?;
            Ok((Box::new(reader), Box::new(port)))
        }
        DeviceSpec::UsbNode(path) => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| offline(path, &e))?;
            let reader = f.try_clone().map_err(|e| offline(path, &e))?;
            Ok((Box::new(reader), Box::new(f)))
        }
        DeviceSpec::Tcp(addr) => {
            let s = std::net::TcpStream::connect(addr).map_err(|e| offline(addr, &e))?;
            s.set_nodelay(true).map_err(|e| offline(addr, &e))?;
            let reader = s.try_clone().map_err(|e| offline(addr, &e))?;
            Ok((Box::new(reader), Box::new(s)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_pick_the_transport() {
        assert_eq!(
            DeviceSpec::parse("tcp://10.1.2.3:9100"),
            DeviceSpec::Tcp("10.1.2.3:9100".into())
        );
        assert_eq!(
            DeviceSpec::parse("/dev/usb/lp0"),
            DeviceSpec::UsbNode("/dev/usb/lp0".into())
        );
        assert_eq!(
            DeviceSpec::parse("/dev/ttyUSB0"),
            DeviceSpec::Serial("/dev/ttyUSB0".into())
        );
    }
}
