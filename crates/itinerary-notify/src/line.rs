//! What the service says on LINE to a LINE user outside any itinerary: the offer to link their
//! account (before linking the service does not know who they are or which language they read,
//! so Japanese first, then English) and the word that the link is made (in the patient's
//! language). Short, polite (keigo), and without anything about the treatment: a LINE user
//! becomes a patient only by proving it on the linking page.

/// The link token in a query value: LINE's are URL-safe already; this keeps a surprise from
/// breaking the URL.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The linking page's URL for a link token.
pub fn link_url(public_url: &str, link_token: &str) -> String {
    format!("{}/line/link?linkToken={}", public_url.trim_end_matches('/'), query_value(link_token))
}

/// The offer to link, with the linking page's URL (valid as long as the link token: ten minutes).
pub fn link_offer(clinic: &str, url: &str) -> String {
    format!(
        "{clinic}の公式アカウントを友だち追加いただき、ありがとうございます。\n\
         ご予約済みの方は、下のリンクからご本人確認(旅程番号と生年月日)のうえ、LINEとの連携をお願いいたします。連携いただくと、ご旅程のご案内をこちらのLINEにお届けします。\n\
         {url}\n\
         ※リンクの有効期限は10分です。期限が切れた場合は、このトークに何かお送りください。新しいリンクをお送りします。\n\n\
         Thank you for adding {clinic}. If you have a booking, please link your LINE account here (you will be asked for your itinerary reference and date of birth; the link is valid for 10 minutes):\n\
         {url}"
    )
}

/// The word that the patient's LINE is linked, with their calendar feed (LINE carries no
/// calendar file; a calendar app subscribes to the feed and follows every change).
pub fn linked(clinic: &str, english: bool, feed_url: Option<&str>) -> String {
    let feed = |intro: &str| feed_url.map(|u| format!("\n{intro}\n{u}")).unwrap_or_default();
    if english {
        format!(
            "Your LINE account is now linked. Reminders for your trip will come here; calendar invitations still come by email.{}\n{clinic}",
            feed("Your itinerary as a calendar your phone can subscribe to (it follows every change; keep this link to yourself):")
        )
    } else {
        format!(
            "LINEとの連携が完了しました。ご旅程のご案内は、今後こちらのLINEにお届けいたします。カレンダーの招待は引き続きメールでお送りします。{}\n{clinic}",
            feed("ご旅程をスマートフォンのカレンダーで購読いただけます(変更も自動で反映されます。このリンクはご本人だけでお使いください):")
        )
    }
}

/// What a patient can answer to a reminder on LINE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 承知しました: they read it and will do it.
    Ack,
    /// 連絡してほしい: they want the coordinator to call them.
    Call,
}

impl Answer {
    pub fn code(self) -> &'static str {
        match self {
            Answer::Ack => "ack",
            Answer::Call => "call",
        }
    }

    /// What the button says, in the patient's language.
    pub fn label(self, english: bool) -> &'static str {
        match (self, english) {
            (Answer::Ack, false) => "承知しました",
            (Answer::Call, false) => "連絡してほしい",
            (Answer::Ack, true) => "Got it",
            (Answer::Call, true) => "Please call me",
        }
    }

    /// The postback's `data` for an answer to scheduled message `message`: `a=ack&m=42`.
    pub fn data(self, message: i32) -> String {
        format!("a={}&m={message}", self.code())
    }

    /// The answer and message a postback's `data` names, if it is one of ours.
    pub fn parse(data: &str) -> Option<(Answer, i32)> {
        let (mut answer, mut message) = (None, None);
        for kv in data.split('&') {
            match kv.split_once('=') {
                Some(("a", "ack")) => answer = Some(Answer::Ack),
                Some(("a", "call")) => answer = Some(Answer::Call),
                Some(("m", m)) => message = m.parse::<i32>().ok().filter(|m| *m > 0),
                _ => return None,
            }
        }
        Some((answer?, message?))
    }
}

/// The two buttons under a reminder.
pub fn answer_buttons(message: i32, english: bool) -> Vec<crate::QuickReply> {
    [Answer::Ack, Answer::Call]
        .into_iter()
        .map(|a| crate::QuickReply { label: a.label(english).to_owned(), data: a.data(message), display_text: a.label(english).to_owned() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_carries_the_url_in_both_languages_and_the_token_stays_whole() {
        let url = link_url("https://itinerary.example.my/", "NMZTNuVrPTqlr2IF8Bnymkb7rXfYv5EY");
        assert_eq!(url, "https://itinerary.example.my/line/link?linkToken=NMZTNuVrPTqlr2IF8Bnymkb7rXfYv5EY");
        assert_eq!(link_url("https://x", "a b&c"), "https://x/line/link?linkToken=a%20b%26c");
        let text = link_offer("KLクリニック", &url);
        assert_eq!(text.matches(url.as_str()).count(), 2);
        assert!(text.contains("10分") && text.contains("10 minutes") && text.chars().count() < 5000);
    }

    #[test]
    fn an_answer_goes_out_and_comes_back_as_itself() {
        for a in [Answer::Ack, Answer::Call] {
            assert_eq!(Answer::parse(&a.data(42)), Some((a, 42)));
            for english in [false, true] {
                assert!(a.label(english).chars().count() <= 20, "LINE cuts labels at 20");
            }
        }
        for odd in ["", "a=ack", "m=4", "a=ack&m=0", "a=ack&m=-1", "a=nope&m=4", "a=ack&m=4&x=1", "answer=ack&message=12"] {
            assert_eq!(Answer::parse(odd), None, "{odd}");
        }
    }
}
