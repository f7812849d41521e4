//! A TCP relay in front of the broker that can cut every connection and turn new ones away —
//! the broker as its clients see it when it stops — and let them in again, as when it is back.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use eddy_kafka::local_broker::LocalBroker;

/// The relay (module docs). Its threads end when the test process does.
pub struct Relay {
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// Relays `listener`'s connections to 127.0.0.1:`target`.
    pub fn start(listener: TcpListener, target: u16) -> Relay {
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                open.extend([client, server]);
            }
        });
        Relay { up, open }
    }

    /// A broker whose clients reach it only through a new relay, and that relay.
    pub fn with_broker() -> (LocalBroker, Relay) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let broker_port = eddy_kafka::local_broker::free_port().unwrap();
        let broker = LocalBroker::start_advertising(broker_port, relay_port).unwrap();
        (broker, Relay::start(listener, broker_port))
    }

    /// The broker "stops": every connection is cut and new ones are closed at once.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// The broker is "back".
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
