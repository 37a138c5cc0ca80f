//! `card …`: the chip encoder, for field engineers.

#[allow(unused_imports)]
use super::*;

use crate::journal::engineering::{EngineeringCommand, EngineeringEntry, EngineeringOutcome};

/// `card …` actions.
#[derive(Debug, Subcommand)]
pub enum CardAction {
    /// Read the card as a terminal would and print its EMV data (PAN masked).
    Read {
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
        /// Application AID (hex); Visa then Mastercard when absent.
        #[arg(long)]
        aid: Option<String>,
    },
    /// Personalize the card from a DGI set with a card product's transport keys.
    Perso {
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
        /// DGI set JSON `{aid, dgis:[{dgi, data, encryption}]}`.
        #[arg(long)]
        dgis: PathBuf,
        /// Card product whose transport keys (from the key store) open the card.
        #[arg(long)]
        transport_key: String,
        /// Who runs this, for the journal (default: the operating-system user).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Issue a card from an order on the encoder only (pre-printed stock).
    Issue {
        /// Order file as the station receives it (D1 cardRequestInstant JSON with JWE).
        #[arg(long)]
        order: PathBuf,
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
        /// The order's cardId, for the journal.
        #[arg(long)]
        card_id: String,
        /// Who runs this, for the journal (default: the operating-system user).
        #[arg(long)]
        actor: Option<String>,
    },
}

/// Who runs an engineering command: `--actor`, else the operating-system user.
fn actor(explicit: Option<String>) -> Result<String, Failure> {
    let os_user = || {
        ["USER", "LOGNAME", "USERNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
    };
    let who = explicit
        .or_else(os_user)
        .ok_or_else(|| usage("--actor: say who runs this (no operating-system user found)"))?;
    let ok = (1..=64).contains(&who.chars().count()) && !who.chars().any(char::is_control);
    if ok {
        Ok(who)
    } else {
        Err(usage("--actor: 1 to 64 printable characters"))
    }
}

/// The masked PAN a DGI set writes (tag 5A in a record DGI), when it has one.
fn masked_pan_in(dgis: &[station_emv::dgi::Dgi]) -> Option<String> {
    dgis.iter().filter(|d| d.id < 0x8000).find_map(|d| {
        let bcd = station_emv::tlv::find(&d.data, 0x5A).ok().flatten()?;
        let digits = zeroize::Zeroizing::new(hex::encode_upper(&bcd));
        let pan = station_emv::card_data::Pan::new(digits.trim_end_matches('F')).ok()?;
        Some(pan.masked())
    })
}

/// An engineering action on the journal: recorded as started before the keys are
/// used, then with its outcome. No journal, no key use.
struct Record {
    journal: crate::journal::Journal,
    entry: crate::journal::engineering::EngineeringEntry,
}

impl Record {
    fn start(
        cfg: &StationConfig,
        mut entry: crate::journal::engineering::EngineeringEntry,
    ) -> Result<Record, Failure> {
        let refused = |e: crate::journal::JournalError| {
            runtime(format!(
                "[{}] {e}: the action is not recorded, so it is not done",
                e.code()
            ))
        };
        let journal =
            crate::journal::Journal::open(&cfg.resolve(&cfg.journal.path)).map_err(refused)?;
        entry.outcome = crate::journal::engineering::EngineeringOutcome::Started;
        journal.record_engineering(&entry).map_err(refused)?;
        Ok(Record { journal, entry })
    }

    /// Records how it ended and hands the result on.
    fn finish(mut self, result: Result<String, Failure>) -> Outcome {
        use crate::journal::engineering::EngineeringOutcome;
        let (outcome, detail) = match &result {
            Ok(done) => (EngineeringOutcome::Done, done.clone()),
            Err(Failure::Usage(m) | Failure::Runtime(m)) => (EngineeringOutcome::Failed, m.clone()),
        };
        self.entry.outcome = outcome;
        // Errors never carry card data; the scrubber is the second line, as for logs.
        self.entry.detail = Some(station_emv::card_data::scrub_pans_text(&detail));
        let recorded = self.journal.record_engineering(&self.entry);
        match (result, recorded) {
            (Ok(done), Ok(())) => {
                println!("{done}");
                Ok(())
            }
            (Ok(done), Err(e)) => Err(runtime(format!(
                "{done}, but the journal could not record it: [{}] {e}",
                e.code()
            ))),
            (Err(f), _) => Err(f),
        }
    }
}

pub(super) async fn encoder(pattern: &str) -> Result<station_pcsc::PcscEncoder, Failure> {
    let cfg =
        station_pcsc::ReaderConfig::new(pattern).map_err(|e| usage(format!("--reader: {e}")))?;
    let mut enc = station_pcsc::PcscEncoder::open(cfg)
        .await
        .map_err(|e| runtime(format!("encoder '{pattern}': {e}")))?;
    enc.wait_for_card(Duration::from_secs(15))
        .await
        .map_err(|e| runtime(format!("encoder '{pattern}': {e}")))?;
    Ok(enc)
}

pub(super) async fn card(explicit: Option<&Path>, action: CardAction) -> Outcome {
    use station_emv::terminal::{read_card, TerminalParams};
    match action {
        CardAction::Read { reader, aid } => {
            let aids: Vec<Vec<u8>> = match aid {
                Some(a) => vec![hex::decode(&a).map_err(|_| usage("--aid is not hex"))?],
                None => vec![
                    hex::decode("A0000000031010").expect("hex"),
                    hex::decode("A0000000041010").expect("hex"),
                ],
            };
            let mut enc = encoder(&reader).await?;
            let mut last = String::new();
            for aid in aids {
                match read_card(&mut enc, &aid, &TerminalParams::default()).await {
                    Ok(r) => {
                        print_readout(&r);
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(runtime(format!("reading the card: {last}")))
        }
        CardAction::Perso {
            reader,
            dgis,
            transport_key,
            actor: who,
        } => {
            let cfg = load_config(explicit)?;
            let who = actor(who)?;
            let production = crate::agent::production_from_config(&cfg).map_err(usage)?;
            let t = production
                .keystore
                .transport_keys(&transport_key)
                .map_err(|e| usage(format!("--transport-key {transport_key}: {e}")))?;
            let text = std::fs::read_to_string(&dgis)
                .map_err(|e| usage(format!("{}: {e}", dgis.display())))?;
            let set = crate::order::card::ChipData::from_json_str(&text)
                .map_err(|e| usage(format!("{}: {}", dgis.display(), e.error)))?;
            let record = Record::start(
                &cfg,
                EngineeringEntry {
                    at: String::new(),
                    actor: who,
                    command: EngineeringCommand::CardPerso,
                    card_id: None,
                    masked_pan: masked_pan_in(&set.dgis),
                    reader: reader.clone(),
                    keys: format!("transport {transport_key}"),
                    outcome: EngineeringOutcome::Started,
                    detail: None,
                },
            )?;
            let result = async {
                let mut enc = encoder(&reader).await?;
                let report = production
                    .write_chip(&mut enc, &set.aid, &set.dgis, &t)
                    .await
                    .map_err(|e| runtime(format!("[{}] {e}", e.code())))?;
                Ok(format!(
                    "personalized: {} DGIs in {} STORE DATA, {} APDUs, {:.0} ms",
                    report.dgi_count,
                    report.store_data_count,
                    report.apdu_count,
                    report.duration.as_secs_f64() * 1000.0
                ))
            }
            .await;
            record.finish(result)
        }
        CardAction::Issue {
            order,
            reader,
            card_id,
            actor: who,
        } => {
            let cfg = load_config(explicit)?;
            let who = actor(who)?;
            let production = crate::agent::production_from_config(&cfg).map_err(usage)?;
            let text = std::fs::read_to_string(&order)
                .map_err(|e| usage(format!("{}: {e}", order.display())))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: {e}", order.display())))?;
            let product = json
                .get("cardProductId")
                .and_then(|p| p.as_str())
                .unwrap_or("(no cardProductId)")
                .to_string();
            // Preparing the card derives its keys: recorded before, like the writing.
            let mut record = Record::start(
                &cfg,
                EngineeringEntry {
                    at: String::new(),
                    actor: who,
                    command: EngineeringCommand::CardIssue,
                    card_id: Some(card_id),
                    masked_pan: None,
                    reader: reader.clone(),
                    keys: format!("card product {product}"),
                    outcome: EngineeringOutcome::Started,
                    detail: None,
                },
            )?;
            let masked_pan = &mut record.entry.masked_pan;
            let result = async {
                let today = time::OffsetDateTime::now_utc().date();
                // Preparation may wait on the HSM: this worker steps aside meanwhile.
                let job = tokio::task::block_in_place(|| production.prepare(&json, today))
                    .map_err(|r| runtime(format!("order refused: {r}")))?;
                *masked_pan = Some(job.masked_pan.clone());
                println!("order accepted for {}", job.masked_pan);
                let mut enc = encoder(&reader).await?;
                let apdus = production
                    .personalize(&mut enc, &job)
                    .await
                    .map_err(|e| runtime(format!("CARD_PROD_EXCEPTION: [{}] {e}", e.code())))?;
                production
                    .verify(&mut enc, &job)
                    .await
                    .map_err(|r| runtime(format!("{r}")))?;
                Ok(format!(
                    "card {} personalized ({apdus} APDUs) and verified: ARQC good",
                    job.masked_pan
                ))
            }
            .await;
            record.finish(result)
        }
    }
}

pub(super) fn print_readout(r: &station_emv::terminal::CardReadout) {
    use station_emv::tlv;
    let tag = |t: u32| r.record_tag(t).map(|v| v.to_vec());
    let pan = tag(0x5A)
        .map(|v| {
            let digits: String = hex::encode_upper(v).trim_end_matches('F').to_string();
            station_emv::card_data::mask_digits(&digits)
        })
        .unwrap_or_else(|| "(none)".into());
    let label = tlv::find(&r.fci, 0x50)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    println!("AID            {}", hex::encode_upper(&r.aid));
    println!("label          {label}");
    println!("AIP            {}", hex::encode_upper(r.aip));
    println!("AFL            {}", hex::encode_upper(&r.afl));
    println!("PAN            {pan}");
    println!(
        "expiry (5F24)  {}",
        tag(0x5F24).map(hex::encode_upper).unwrap_or_default()
    );
    println!(
        "PSN (5F34)     {}",
        tag(0x5F34).map(hex::encode_upper).unwrap_or_default()
    );
    println!(
        "name (5F20)    {}",
        tag(0x5F20)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    );
    if let Some(t2) = tag(0x57) {
        let s = hex::encode_upper(t2);
        let masked = match s.split_once('D') {
            Some((p, rest)) => format!(
                "{}D{}",
                station_emv::card_data::mask_digits(p),
                rest.get(..7).unwrap_or("")
            ),
            None => "(malformed)".into(),
        };
        println!("track 2 eq.    {masked}…");
    }
    println!(
        "PIN tries      {}",
        r.pin_try_counter
            .map(|c| c.to_string())
            .unwrap_or("?".into())
    );
    let g = &r.generate_ac;
    let kind = match g.cid & 0xC0 {
        0x80 => "ARQC",
        0x40 => "TC",
        _ => "AAC",
    };
    println!("ATC            {}", hex::encode_upper(g.atc));
    match g.ac {
        Some(ac) => println!("cryptogram     {kind} {}", hex::encode_upper(ac)),
        None => println!("cryptogram     {kind} inside the CDA signature (9F4B)"),
    }
    println!("IAD (9F10)     {}", hex::encode_upper(&g.iad));
}
